"""(being written)"""
class QueryCache:
    def __init__(self, db, metrics):
        pass
