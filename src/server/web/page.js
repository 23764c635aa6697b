"use strict";
// A stub: the real page replaces it.
document.getElementById("log").textContent = "confab";
