from facelab.cli.main import main

raise SystemExit(main())
