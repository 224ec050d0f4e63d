"""`access`: allow or deny requests by path, model and header values."""
