from nag_assets.checks.cli import main

raise SystemExit(main())
