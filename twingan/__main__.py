from twingan.cli.main import main

raise SystemExit(main())
