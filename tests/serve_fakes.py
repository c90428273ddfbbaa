"""`coach serve` with the stand-in models, as its own process (for the crash-recovery test).

    python -m tests.serve_fakes DATA_DIR PORT
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
    settings = Settings(admin_token=ADMIN, server=ServerSettings(data_dir=data_dir))
    settings.asr.interims = False
    app = create_app(settings, transcriber=PhraseTranscriber(PHRASES), text=None, vad_factory=EnergyVad)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
