import caffepy
class Mine(caffepy.Layer:
    pass
