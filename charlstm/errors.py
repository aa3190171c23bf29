class CharlstmError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits 1."""
