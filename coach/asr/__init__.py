"""Streaming speech-to-text: voice activity, endpointing, and a shared Whisper model."""
