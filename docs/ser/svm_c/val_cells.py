"""The six validation cells of the C grid (reports/c/*; C = 10: reports/v2/*), never the test rows."""
import json
rows = {}
ho = json.load(open('reports/c/held_out_val.json'))['ua']
for C in ['10', '1', '3', '30', '100']:
    loco = []
    for corp in ['emodb', 'ravdess', 'nemo']:
        f = f'reports/v2/{corp}_w0/ser_eval.json' if C == '10' else f'reports/c/{corp}_C{C}/ser_eval.json'
        try: loco.append(json.load(open(f))['rows']['validation']['ua'])
        except FileNotFoundError: loco.append(None)
    key = [k for k in ho if k == ('runs/v2/stats3p_noval' if C == '10' else f'runs/c/stats3p_noval_C{C}')]
    h = [ho[key[0]][c] for c in ('emodb', 'ravdess', 'nemo')] if key else [None]*3
    cells = h + loco
    ok = [x for x in cells if x is not None]
    print(f'C={C:>4}', ' '.join('  -  ' if x is None else f'{x:.3f}' for x in cells), f'worst {min(ok):.3f} mean {sum(ok)/len(ok):.3f}' if len(ok)==6 else '', key[:1])
