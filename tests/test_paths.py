import os

from support import mode
from facewarden import paths


def test_facewarden_home_moves_everything(home):
    p = paths.paths()
    for d in (p.config_dir, p.data_dir, p.state_dir, p.cache_dir, p.runtime_dir):
        assert home in d.parents or d == home
    assert p.models_dir == home / "models"


def test_xdg_dirs_are_ours_and_never_facelock(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEWARDEN_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    p = paths.paths()
    assert p.config_file == tmp_path / ".config/facewarden/config.toml"
    assert p.models_dir == tmp_path / ".local/share/facewarden/models"
    assert p.socket_path == tmp_path / "run/facewarden/control.sock"
    assert all("facelock" not in str(d) for d in (p.config_dir, p.data_dir, p.state_dir, p.cache_dir))


def test_write_private_is_0600_in_0700_even_with_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        target = paths.write_private(tmp_path / "a" / "b" / "secret.bin", b"x")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"x"
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert not [f for f in os.listdir(target.parent) if f.startswith(".")]
