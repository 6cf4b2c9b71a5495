"""Small helpers with no product logic: atomic file writes and the package's data files.

Runs in every process. Imports only the standard library; every other folder may import it.
"""
