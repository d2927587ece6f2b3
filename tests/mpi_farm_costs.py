"""Farm.map with costs under mpirun: ``python mpi_farm_costs.py`` prints one JSON line per rank
(the results, and the CPU seconds the rank used while the other worked 2 s on the long item)."""
import json
import sys
import time

from multiscale.parallel import Farm

farm = Farm.from_environment()


def work(item):
    if item == "long":
        time.sleep(2.0)
    return [item, farm.rank]


cpu = time.process_time()
results = farm.map(work, ["a", "b", "long"], costs=[1.0, 1.0, 10.0])
# one write per line: print() writes the text and the newline separately, and mpirun may interleave
# the two ranks' writes between them ("}{" on one line)
sys.stdout.write(json.dumps({"rank": farm.rank, "results": results, "cpu_s": time.process_time() - cpu}) + "\n")
sys.stdout.flush()
