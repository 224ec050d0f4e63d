"""Tools for policy authors and operators: the audit log, `replay` and `policy explain`."""
