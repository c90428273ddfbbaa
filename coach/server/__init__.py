"""The live service: `coach serve`."""
