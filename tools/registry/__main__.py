from tools.registry.cli import main

raise SystemExit(main())
