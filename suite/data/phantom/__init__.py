"""A synthetic cardiac cine-MR cohort written in exactly the ACDC release layout (``suite phantom``).

Each patient is a short-axis stack (6–18 slices, slice spacing 5/6.5/7/10 mm, in-plane 1.2–1.8 mm, matrix
200–260) at end-diastole (ED) and end-systole (ES), with ACDC's labels (1 RV cavity, 2 myocardium, 3 LV
cavity). It is meant as a fair test bed for size-constrained semi-supervised segmentation, so what makes
real ACDC hard for a segmenter trained on few patients is modelled, not only noise:

- anatomy: the LV cavity is a truncated ellipsoid (widest at the base, closing at the apex, papillary
  muscles inside the cavity label as in ACDC), wrapped by a myocardium whose thickness varies with the angle
  (regional thinning in infarcts), a crescent RV on one side; basal slices above the valve show the atrium
  (bright, unlabeled) and slices past the apex show only myocardium or nothing;
- ED → ES: radial contraction + long-axis shortening (the base descends, so a basal ES slice may lose its
  LV label) with myocardial area conserved (the wall thickens); the ejection fraction comes from the group;
- groups (ACDC names) NOR, DCM (large cavity, thin wall, low EF), HCM (small cavity, thick wall, high EF),
  MINF (enlarged, regional thinning, low EF), RV (enlarged RV, low RV EF);
- patient-to-patient variation: body size, heart size, position, orientation (± mirror) and tilt of the
  long axis in the field of view, the field of view itself, tissue contrast, intensity scale;
- confounders: the RV blood pool as bright as the LV's, the descending aorta and atrium (bright discs),
  pericardial and subcutaneous fat, bright fluid blobs; lungs and liver;
- acquisition: partial-volume averaging across the slice thickness, in-plane blur, a smooth multiplicative
  bias field, Rician noise, int16 storage.

Patient ``k`` is a pure function of ``(seed, k)`` (``derive_seed``), so a cohort of 30 patients is the first
30 of the cohort of 100. Groups are interleaved (NOR, DCM, HCM, MINF, RV, NOR, …) by default so that every
prefix is balanced; ``group_order="acdc"`` assigns them in blocks of 20 as the real release does (001–020
DCM, 021–040 HCM, 041–060 MINF, 061–080 NOR, 081–100 RV), which matters for the paper's "first n training
patients" labeled subsets (with the authors' seed, the n = 5 labeled patients of real ACDC are all DCM). The
``_4d.nii.gz`` cine files are not written (the reader ignores them). See ``docs/phantom.md`` for how its
statistics compare with real ACDC.

- :mod:`suite.data.phantom.anatomy`  the groups' parameters, one patient's heart and pose, one rendered slice
- :mod:`suite.data.phantom.imaging`  one patient (``make_patient``): subject, field of view, surroundings,
  partial volume, blur, bias field, Rician noise
- :mod:`suite.data.phantom.cohort`   patient groups, the NIfTI files, ``write_cohort`` (atomic, idempotent)
"""
