"""``ganforge-explore``: a local web page to look at a trained GAN and its run (:mod:`.drawing` draws, :mod:`.runs`
reads run folders, :mod:`.app` lays out the page)."""
