from hostsyncd.cli import main

raise SystemExit(main())
