from cleanroom.cli import main

raise SystemExit(main())
