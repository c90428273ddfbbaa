import shutil

import pytest

from coach.demo import Turn, synthesize_call, write_wav


@pytest.fixture(scope="session")
def short_call(tmp_path_factory):
    """A two-party call spoken by espeak-ng: (stereo wav path, timeline of turns)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for the model tests: run `make system-deps`")
    turns = (
        Turn("agent", "Thank you for calling, my name is Sam. How can I help you today?", 0.5),
        Turn("customer", "I was charged twice for my order and I would like a refund please."),
        Turn("agent", "I am sorry about that. I can see both payments, and I will refund the second one now."),
    )
    stereo, timeline = synthesize_call(turns)
    path = write_wav(tmp_path_factory.mktemp("calls") / "short-call.wav", stereo)
    return path, timeline


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (tests.services): the URL of its admin database."""
    from tests.services import postgres

    with postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_at(request):
    """Opens the call store on either engine: SQLite in the folder, or a fresh PostgreSQL database
    (recordings in the folder); opening it again reaches the same data."""
    from coach.store import open_store

    url = None
    if request.param == "postgres":
        from tests.services import fresh_database

        url = fresh_database(request.getfixturevalue("postgres_server"))
    return lambda folder: open_store(folder, url)
