"""Idle-culler hub service: ``jupyterhub-lab-idle-culler`` / ``python -m jupyterhub_lab_ext.services.culler``."""
