"""Label Studio, the annotation tool teams run themselves: its server (`server`), the few REST calls
the round trip makes (`client`), and tasks out and answers back as plain data (`tasks`). The
commands are `make label-studio`, `make annotate` and `make annotate-pull` (mnist_assets/annotate.py);
docs/review.md#label-studio describes the whole."""
