import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own UNIJOB_HOME: records and local jobs never touch the user's."""
    home = tmp_path / "unijob-home"
    monkeypatch.setenv("UNIJOB_HOME", str(home))
    return home
