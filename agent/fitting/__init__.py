"""What is fit on a run's validation users and kept in its folder: the intent prior (`prior`),
the learned assembly (`assembly`), and fitting them for a run (`files`). These modules run the
agent to fit what it loads; the agent never imports them."""
