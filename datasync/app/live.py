"""(being written)"""
class LiveQueries:
    def __init__(self, db):
        pass
