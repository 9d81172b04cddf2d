from tools.k8s.cli import main

raise SystemExit(main())
