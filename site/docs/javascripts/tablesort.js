/* mcbench: sortable tables. Click a column header to sort; click again to reverse.
 * Written for mcbench (MIT, no dependencies, works offline). Like mkdocs-material's table-sorting
 * recipe, it marks headers role="columnheader" and sets aria-sort, which material's CSS turns into
 * sort icons. Cells sort by their leading number ("91.2 ± 0.3" -> 91.2) when both have one, else
 * by text; empty cells and dashes go last in either direction. A table whose head has two rows (column
 * groups above the columns) sorts by the cells of the last head row.
 */
(function () {
  "use strict";
  var NUM = /^[+\-]?(\d+\.?\d*|\.\d+)(e[+\-]?\d+)?/i;

  function sortKey(cell) {
    var text = cell ? (cell.getAttribute("data-sort") || cell.textContent || "").trim() : "";
    var m = text.replace(/,/g, "").replace(/\u2212/g, "-").match(NUM);
    if (m) return { empty: false, num: parseFloat(m[0]), text: text.toLowerCase() };
    return { empty: text === "" || text === "\u2014", num: null, text: text.toLowerCase() };
  }

  function compare(a, b) {
    if (a.num !== null && b.num !== null) return a.num - b.num;
    if (a.num !== null) return -1;
    if (b.num !== null) return 1;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }

  function sortBy(table, th, index) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    headers(table).forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, i: i, key: sortKey(row.cells[index]) };
    });
    rows.sort(function (a, b) {
      if (a.key.empty !== b.key.empty) return a.key.empty ? 1 : -1;
      var c = compare(a.key, b.key);
      return (ascending ? c : -c) || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }

  function headers(table) {
    var rows = table.tHead.rows;
    return Array.prototype.slice.call(rows[rows.length - 1].cells);
  }

  function mount(table) {
    if (table.dataset.mcSortable || !table.tHead || !table.tBodies.length || table.tBodies[0].rows.length < 2) return;
    table.dataset.mcSortable = "1";
    headers(table).forEach(function (th, index) {
      th.setAttribute("role", "columnheader");
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () { sortBy(table, th, index); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, index); }
      });
    });
  }

  function mountAll() {
    document.querySelectorAll("article table:not([class])").forEach(mount);
  }

  if (typeof document$ !== "undefined") {
    document$.subscribe(mountAll);   // material's observable: also fires after instant navigation
  } else {
    document.addEventListener("DOMContentLoaded", mountAll);
  }
})();
