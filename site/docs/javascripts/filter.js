/* mcbench: filter the catalog's papers table by status, family and text (no dependencies, offline).
 * Controls: <select data-mc-filter="status|family"> and <input data-mc-filter="text"> inside .mc-filter;
 * the table is the one in the following .mc-papers block. Columns are found by their header text
 * ("Status", "Family"), so the table layout can change. Without JavaScript every row shows.
 */
(function () {
  "use strict";

  function column(table, name) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].textContent.trim().toLowerCase() === name) return i;
    }
    return -1;
  }

  function mount(box) {
    if (box.dataset.mcMounted) return;
    var block = box.nextElementSibling;
    while (block && !block.classList.contains("mc-papers")) block = block.nextElementSibling;
    var table = block && block.querySelector("table");
    if (!table || !table.tBodies.length) return;
    box.dataset.mcMounted = "1";
    var controls = box.querySelectorAll("[data-mc-filter]");
    var count = box.querySelector(".mc-filter-count");
    var cols = { status: column(table, "status"), family: column(table, "family") };

    function apply() {
      var want = {};
      controls.forEach(function (c) { want[c.getAttribute("data-mc-filter")] = c.value.trim().toLowerCase(); });
      var shown = 0, rows = table.tBodies[0].rows;
      for (var r = 0; r < rows.length; r++) {
        var row = rows[r], ok = true;
        ["status", "family"].forEach(function (k) {
          if (ok && want[k] && cols[k] >= 0) ok = row.cells[cols[k]].textContent.trim().toLowerCase() === want[k];
        });
        if (ok && want.text) ok = row.textContent.toLowerCase().indexOf(want.text) !== -1;
        row.hidden = !ok;
        if (ok) shown++;
      }
      if (count) count.textContent = shown + " of " + rows.length + " papers";
    }
    controls.forEach(function (c) { c.addEventListener("input", apply); c.addEventListener("change", apply); });
    apply();
  }

  function mountAll() { document.querySelectorAll(".mc-filter").forEach(mount); }
  if (typeof document$ !== "undefined" && document$.subscribe) document$.subscribe(mountAll);  // material instant loading
  else document.addEventListener("DOMContentLoaded", mountAll);
})();
