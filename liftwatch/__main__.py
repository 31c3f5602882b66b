from liftwatch.cli import main

raise SystemExit(main())
