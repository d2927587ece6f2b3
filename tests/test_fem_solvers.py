"""fem.solvers and fem.mesh_io plumbing: quiet FFCx JIT, XDMF pairs that appear whole or not at all."""
import logging

import pytest
from mpi4py import MPI

from fem import geometry, mesh_io
from fem.solvers import quiet_jit


def test_quiet_jit_drops_root_info_and_keeps_warnings_and_named_loggers(caplog):
    caplog.set_level(logging.DEBUG)
    with quiet_jit():
        with quiet_jit():          # nested blocks: still quiet after the inner one ends
            pass
        logging.getLogger().info("x86_64-linux-gnu-gcc -c libffcx_forms.c")
        logging.getLogger().warning("a warning")
        logging.getLogger("fem.test").info("a named logger")
    logging.getLogger().info("after the block")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a warning", "a named logger", "after the block"]


def _mesh():
    return mesh_io.mesh_from_gmsh(geometry.stripes, MPI.COMM_WORLD, phases=("a", "b"), length_nm=2.0, height_nm=1.0,
                                  period_nm=2.0, fraction=0.5, orientation="y", mesh_size_nm=0.5)


def test_field_writer_publishes_on_close_and_keeps_the_old_pair_on_error(tmp_path):
    msh, ct, _, _ = _mesh()
    path = tmp_path / "fields.xdmf"
    writer = mesh_io.FieldWriter(path, msh)
    assert not path.exists()                      # nothing at the target while it is being written
    writer.close()
    assert path.is_file() and path.with_suffix(".h5").is_file()
    before = path.read_text()
    with pytest.raises(RuntimeError):
        with mesh_io.FieldWriter(path, msh):
            raise RuntimeError("solver failed")
    assert path.read_text() == before             # the previous pair is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fields.h5", "fields.xdmf"]   # no scratch left


def test_mesh_written_atomically_reads_back(tmp_path):
    msh, ct, _, _ = _mesh()
    mesh_io.write_mesh_xdmf(tmp_path / "m.xdmf", msh, ct)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "m.xdmf"]
    msh2, ct2, _, layout = mesh_io.mesh_from_xdmf(tmp_path / "m.xdmf", ["a", "b"])
    assert msh2.topology.index_map(2).size_global == msh.topology.index_map(2).size_global
    assert layout.length_nm == pytest.approx(2.0)
