"""twistd entry points: one Options class and makeService() per role."""
