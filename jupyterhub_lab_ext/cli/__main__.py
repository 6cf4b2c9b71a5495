from jupyterhub_lab_ext.cli.main import main

raise SystemExit(main())
