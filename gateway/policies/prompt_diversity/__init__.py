"""`prompt_diversity`: recognise harvesting from what prompts look like, and respond in steps."""
