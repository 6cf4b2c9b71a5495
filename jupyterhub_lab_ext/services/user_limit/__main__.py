"""``python -m jupyterhub_lab_ext.services.user_limit``: run the user-limit service."""

from .app import main

if __name__ == "__main__":
    main()
