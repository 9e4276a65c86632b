"""Predictions from memory (a loaded checkpoint's `Predictor`) and over HTTP (the FastAPI app of `litforge.serve`)."""
