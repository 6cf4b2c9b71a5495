"""``python -m jupyterhub_lab_ext.services.user_limit``: run the user-limit service."""

from jupyterhub_lab_ext.services.user_limit.app import main

if __name__ == "__main__":
    main()
