"""Everything that needs a browser (Pyodide's ``js`` module), in one package.

Example (Pyodide)::

    db = await datasync.open("app")          # IndexedDB: datasync.browser.indexeddb

Modules: :mod:`.indexeddb` (the block backend), :mod:`.open_lock` (who may open a
store), :mod:`.lifecycle` (flush when the page is hidden). Nothing outside this
package imports ``js``; native code never imports this package (the runtime picks
its pieces: :mod:`datasync.runtime`).
"""
