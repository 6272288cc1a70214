"""notify: the smallest useful service on the core. Text or HTML over HTTP into a Matrix room."""
