"""Label Studio, the annotation tool teams run themselves: its server (`server`), the few REST calls
the round trip makes (`client`), tasks out and answers back as plain data (`tasks`), and answers
recorded in a dataset's review log (`answers`, for `make annotate-pull` and the Label Studio
sensor). The commands are `make label-studio`, `make annotate` and `make annotate-pull`
(mnist_assets/annotate.py); docs/review.md#label-studio describes the whole."""
