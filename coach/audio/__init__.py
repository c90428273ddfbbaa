"""Audio sources: recordings now, telephony streams later; all become per-party 16 kHz frames."""
