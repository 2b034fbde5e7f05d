from pathlib import Path

import pytest
import tomllib

from facewarden import config
from facewarden.events import Action, Event

REPO = Path(__file__).resolve().parent.parent


def test_shipped_config_toml_is_the_models_default():
    shipped = tomllib.loads((REPO / "config.toml").read_text())
    assert config.parse(shipped) == config.Config()
    assert config.default_text() == (REPO / "config.toml").read_text()


def test_every_error_is_reported_at_once_with_its_key_path(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[lock]\nafter_absent_s = -1\n[camera]\nwidth = "wide"\n[presence]\nwindow = 2\nrequired = 3\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(bad)
    text = str(e.value)
    assert "lock.after_absent_s" in text
    assert "camera.width" in text
    assert "presence" in text and "required must not exceed window" in text
    assert text.count("\n") == 2


def test_unknown_keys_and_events_are_refused(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[lok]\nafter_absent_s = 3\n[actions]\nowner_gone = ["lock"]\nowner_left = ["explode"]\n')
    text = str(pytest.raises(config.ConfigError, config.load, bad).value)
    assert "lok" in text and "owner_gone" in text and "owner_left" in text


def test_unlock_with_liveness_off_is_refused():
    with pytest.raises(config.ConfigError, match="unlock.*liveness"):
        config.parse({"liveness": {"enabled": False}, "actions": {"owner_arrived": ["unlock"]}})
    ok = config.parse({"actions": {"owner_arrived": ["unlock"]}})
    assert ok.unlock_enabled and ok.actions[Event.OWNER_ARRIVED] == [Action.UNLOCK]


def test_not_toml_is_one_clear_error(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[camera\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)


def test_a_users_actions_table_changes_only_the_events_it_names():
    cfg = config.parse({"actions": {"onlooker_detected": ["notify"]}})
    assert cfg.actions[Event.OWNER_LEFT] == [Action.LOCK]
    assert cfg.actions[Event.STRANGER_DETECTED] == [Action.SNAPSHOT, Action.LOCK]
    assert cfg.actions[Event.SPOOF_SUSPECTED] == [Action.NOTIFY, Action.LOCK]
    assert cfg.actions[Event.ONLOOKER_DETECTED] == [Action.NOTIFY]
    # Setting only owner_left keeps the onlooker notification; [] takes an event's actions away on purpose.
    cfg = config.parse({"actions": {"owner_left": ["notify", "lock"], "camera_lost": []}})
    assert cfg.actions[Event.ONLOOKER_DETECTED] == [Action.SNAPSHOT, Action.NOTIFY]
    assert cfg.actions[Event.CAMERA_LOST] == []


def readme_example() -> dict:
    """The config example under the README's "Configure it"."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Configure it"):]
    return tomllib.loads(section.split("```toml\n", 1)[1].split("```", 1)[0])


def test_the_readmes_example_still_locks_and_doctor_fails_a_config_where_nothing_does():
    from facewarden.desktop.doctor import check_locking

    example = config.parse(readme_example())
    assert example.actions[Event.OWNER_LEFT] == [Action.LOCK]
    (ok,) = check_locking(example)
    assert ok.ok and ok.line().startswith("ok   locking: locks on owner_left, stranger_detected")
    (warned,) = check_locking(config.parse({"actions": {"stranger_detected": ["snapshot"]}}))
    assert warned.line().startswith("warn locking:") and "not on stranger_detected" in warned.line()
    (failed,) = check_locking(config.parse({"actions": {e: [] for e in ("owner_left", "stranger_detected",
                                                                       "spoof_suspected")}}))
    assert failed.line().startswith("FAIL locking: no event locks the session")
