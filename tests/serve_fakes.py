"""`coach serve` with the stand-in models, as its own process (the crash-recovery and cluster tests).

    python -m tests.serve_fakes DATA_DIR PORT [SETTING=VALUE ...]

Each SETTING=VALUE is a server setting (``database_url=postgresql://...``, ``redis_url=...``,
``node_id=A``).
"""

import sys
from pathlib import Path

import uvicorn

from coach.config import ServerSettings, Settings
from coach.server.app import create_app
from tests.fakes import EnergyVad, PhraseTranscriber
from tests.live import ADMIN, PHRASES

if __name__ == "__main__":
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    extra = dict(arg.split("=", 1) for arg in sys.argv[3:])
    settings = Settings(admin_token=ADMIN, server=ServerSettings(data_dir=data_dir, **extra))
    settings.asr.interims = False
    app = create_app(settings, transcriber=PhraseTranscriber(PHRASES), text=None, vad_factory=EnergyVad)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
