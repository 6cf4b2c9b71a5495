from jupyterhub_lab_ext.services.culler.app import main

main()
