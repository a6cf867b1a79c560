"""The learning testbed and the studies on it (issue 22): see README.md."""
