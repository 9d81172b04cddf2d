from tools.helm.cli import main

raise SystemExit(main())
