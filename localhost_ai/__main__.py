from localhost_ai.cli import main

raise SystemExit(main())
