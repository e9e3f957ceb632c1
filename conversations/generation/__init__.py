"""The one path of a reply, from a user's send to its settled ending: admission (may it
start?), sending (the messages and the request, written), runner (one task per upstream
request, relaying its events to every tab), settle (every ending written once), and the
reaper and titles, which end requests and make them too."""
