"""`rate_shaping`: limit what one identity can draw from the model, and shape it."""
