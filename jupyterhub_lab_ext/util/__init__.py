"""Small helpers with no product logic: atomic file writes (``atomic``), the package's data files
(``data``) and secrets kept in files of their own (``secretfile``).

Runs in every process. Imports only the standard library; every other folder may import it.
"""
