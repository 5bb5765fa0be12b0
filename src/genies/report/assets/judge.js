"use strict";
// genies judge pages (one judge, or a leaderboard): the tables are written by Python; this only
// sorts a table.sortable by the column header clicked (numbers by their data-v value, descending
// first; text ascending first; missing values last either way).
(function () {
  function sortBy(table, th) {
    const col = [...th.parentNode.children].indexOf(th);
    const text = th.classList.contains("t");
    const asc = th.classList.contains("sorted") ? !th.classList.contains("asc") : text;
    const body = table.tBodies[0];
    const key = (tr) => {
      const td = tr.children[col];
      if (!td) return null;
      if (text) return td.textContent;
      const v = td.getAttribute("data-v");
      return v === null || v === "" ? null : Number(v);
    };
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null) return y === null ? 0 : 1;
      if (y === null) return -1;
      return (text ? x.localeCompare(y) : x - y) * (asc ? 1 : -1);
    });
    body.append(...rows);
    th.parentNode.querySelectorAll("th").forEach((h) => h.classList.remove("sorted", "asc"));
    th.classList.add("sorted");
    th.classList.toggle("asc", asc);
  }
  try {
    document.querySelectorAll("table.sortable").forEach((table) => {
      table.querySelectorAll("thead th").forEach((th) => th.addEventListener("click", () => sortBy(table, th)));
    });
  } finally {
    window.__geniesReadyMs = performance.now();
    document.body.setAttribute("data-ready", "1");
  }
})();
