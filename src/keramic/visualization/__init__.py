"""`keras.visualization`: segmentation masks and bounding boxes drawn onto images, and matplotlib galleries.

Box drawing needs OpenCV (`opencv-python[-headless]`) and the galleries matplotlib: both are imported
on first use (the `visualization` extra), so `import keramic` never loads pyplot.
"""

from keramic.visualization.boxes import draw_bounding_boxes
from keramic.visualization.gallery import plot_image_gallery
from keramic.visualization.masks import draw_segmentation_masks
from keramic.visualization.overlay_galleries import plot_bounding_box_gallery, plot_segmentation_mask_gallery
