"""Tests for gateway.signals: prompt extraction, fingerprints, elicitation patterns."""
