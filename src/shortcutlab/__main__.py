from shortcutlab.cli import main

raise SystemExit(main())
