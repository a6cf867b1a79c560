"""Dataset-side building blocks shared by the data tools and training (images)."""
